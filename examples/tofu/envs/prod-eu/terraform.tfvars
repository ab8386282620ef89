name     = "prod-eu"
replicas = 3
