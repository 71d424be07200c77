from pcnets.cli import main

main()
