name     = "prod-us"
replicas = 3
