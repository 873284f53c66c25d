"""The end-to-end demo (creation -> understanding -> distribution) behind `videoai demo`."""
from videoai.demo.run import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
