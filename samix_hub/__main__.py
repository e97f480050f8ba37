from samix_hub.cli.main import main

if __name__ == "__main__":
    main()
