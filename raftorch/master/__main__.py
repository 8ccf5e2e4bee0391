from raftorch.master.main import main

main()
