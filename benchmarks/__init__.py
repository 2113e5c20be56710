"""`make bench`: fixed-input benchmarks printing `name: value unit (target ...)`, one line each."""
