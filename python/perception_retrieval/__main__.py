"""python -m perception_retrieval: the same command line as perception-retrieval."""

from .process import main

raise SystemExit(main())
