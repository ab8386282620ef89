name     = "dev-3"
replicas = 1
