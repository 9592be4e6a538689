"""FPGA stage: distil taggers into small students, prune and quantise them, convert them with hls4ml, prove
the C++ emulation computes what the quantised PyTorch model computes, count operations, and synthesise."""
