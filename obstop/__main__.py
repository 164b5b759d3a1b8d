from obstop.entry import main

main()
