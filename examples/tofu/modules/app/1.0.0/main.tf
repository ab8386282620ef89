# app 1.0.0: a service, its database and a DNS name. terraform_data stands in for real
# resources so the example runs offline with only Terraform's built-in provider.
variable "name" {
  type = string
}

variable "engine" {
  type    = string
  default = "pg15"
}

variable "replicas" {
  type    = number
  default = 1
}

resource "terraform_data" "database" {
  input            = { name = "${var.name}-db", size = "small" }
  triggers_replace = var.engine
}

resource "terraform_data" "service" {
  input = { name = var.name, replicas = var.replicas, image = "app:1.0.0" }
}

resource "terraform_data" "dns" {
  for_each = toset([var.name])
  input    = "${each.key}.apps.internal"
}

output "version" {
  value = "1.0.0"
}
