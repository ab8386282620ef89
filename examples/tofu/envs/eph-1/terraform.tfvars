name     = "eph-1"
replicas = 1
