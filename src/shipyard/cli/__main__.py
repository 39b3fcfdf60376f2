from shipyard.cli.launch import main

main()
