from heisenberg.cli import main

raise SystemExit(main())
