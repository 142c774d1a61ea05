"""tamx stages (encode, explain, import/export, info) and the `tamx` command line."""
