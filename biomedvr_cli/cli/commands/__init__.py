"""Command modules: parse options, call the library, render. One module per subcommand."""
