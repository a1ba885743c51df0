from actor_admin.cli import main

raise SystemExit(main())
