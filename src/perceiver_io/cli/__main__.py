from perceiver_io.cli import main

main()
