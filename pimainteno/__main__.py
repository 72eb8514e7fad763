from pimainteno.cli import main

main()
