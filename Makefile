# Entry points; each delegates to a script in scripts/ (which sets up .venv on first use).
# Extra arguments: make bench ARGS="--quick", make test ARGS="-k road".
.PHONY: demo test bench bench-quick bench-scale tracking-server tracking-server-postgres tracking-server-stop

demo:
	bash scripts/demo.sh $(ARGS)

test:
	bash scripts/test.sh $(ARGS)

bench:
	bash scripts/bench.sh $(ARGS)

bench-quick:
	bash scripts/bench.sh --quick $(ARGS)

# The whole pipeline at real SF3D size (22,430 images, 640x480): tens of minutes; not in CI.
# Writes outputs/benchmarks/scale/scale.{json,md}. make bench-scale ARGS="--speed-full"
bench-scale:
	"$$(bash scripts/venv.sh)" benchmarks/scale.py $(ARGS)

# Local MLflow server on 127.0.0.1:5000 (SQLite, or PostgreSQL when installed / SAGE_POSTGRES_URI);
# foreground, Ctrl-C stops it. make tracking-server ARGS="--port 5001 --background"
tracking-server:
	bash scripts/tracking_server.sh sqlite $(ARGS)

tracking-server-postgres:
	bash scripts/tracking_server.sh postgres $(ARGS)

tracking-server-stop:
	bash scripts/tracking_server.sh --stop
