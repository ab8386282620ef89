name     = "dev-2"
replicas = 1
