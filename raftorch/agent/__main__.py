from raftorch.agent.main import main

main()
