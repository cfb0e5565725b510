"""fieldbank's HTTP service (FastAPI): the bank routes now, decision routes next."""
