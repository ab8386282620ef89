name     = "eph-2"
replicas = 1
