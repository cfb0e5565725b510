# The two commands a newcomer needs: `make demo` and `make test`.
export UV_PYTHON_DOWNLOADS := never
UV ?= uv

.PHONY: install demo test test-fast bench docs clean

install:
	# --compile-bytecode: this machine sets PYTHONDONTWRITEBYTECODE, so without it every process (each
	# server worker, each CLI test) compiles its imports from source: an app started in 25 s, 9 s with it.
	$(UV) sync --frozen --python python3.11 --compile-bytecode

demo: install
	$(UV) run --frozen fieldbank demo

test: install
	$(UV) run --frozen pytest -n 2 --dist loadfile

test-fast: install
	$(UV) run --frozen pytest -n 2 --dist loadfile -m "not slow"

bench: install
	$(UV) run --frozen python benchmarks/run_all.py

docs: install
	$(UV) run --frozen fieldbank contract --markdown > docs/data-contract.md

clean:
	rm -rf var .pytest_cache
