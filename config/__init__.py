"""What every process reads: settings from the environment and the queue contract (task
names) between api and worker. Imports nothing of ours."""
