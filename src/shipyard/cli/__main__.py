from shipyard.cli.commands import main

main()
