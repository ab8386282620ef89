name     = "prod-ap"
replicas = 3
