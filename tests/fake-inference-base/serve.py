"""Entry point of the local inference-like base image: reports what it would serve, then exits."""

import sys

if __name__ == "__main__":
    print("inference base image entry point:", " ".join(sys.argv[1:]))
