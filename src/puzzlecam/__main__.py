from puzzlecam.cli import main

raise SystemExit(main())
