from edgeskin.cli import main

main()
