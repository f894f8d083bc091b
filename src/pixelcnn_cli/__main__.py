"""``python -m pixelcnn_cli`` (what torchrun launches)."""

from .cli.app import main

if __name__ == "__main__":
    main()
