"""python -m perception_retrieval: the same command line as perception-retrieval."""

from .cli import main

raise SystemExit(main())
