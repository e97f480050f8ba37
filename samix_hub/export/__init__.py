"""Export, ONNX, int8, cards, loading and validation of artifacts."""
