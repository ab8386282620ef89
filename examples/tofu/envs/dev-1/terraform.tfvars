name     = "dev-1"
replicas = 1
