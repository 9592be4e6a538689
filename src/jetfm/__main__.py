from jetfm.cli import main

raise SystemExit(main())
