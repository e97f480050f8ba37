"""The Hugging Face Hub: resolve, pull, push, local copies, the public classes' Hub methods."""
