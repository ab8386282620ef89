name     = "stg-eu"
replicas = 2
