"""The overhead benchmarks of SPEC section 8 (`./build.sh bench`, `python bench/run.py`)."""
