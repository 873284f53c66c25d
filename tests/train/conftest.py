import sys
from pathlib import Path

# tiny_training.py is a plain script beside the tests (torchrun runs it too); make it importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))
