# app 2.0.0: new image, a bigger database, a health monitor; the database engine is pinned to
# pg15 (1.0.0 let an environment choose), so an environment still on pg14 gets its database
# *replaced* — the outlier the preview flags.
variable "name" {
  type = string
}

variable "engine" {
  type        = string
  default     = "pg15"
  description = "Ignored since 2.0.0: every database runs pg15."
}

variable "replicas" {
  type    = number
  default = 1
}

resource "terraform_data" "database" {
  input            = { name = "${var.name}-db", size = "medium" }
  triggers_replace = "pg15"
}

resource "terraform_data" "service" {
  input = { name = var.name, replicas = var.replicas, image = "app:2.0.0" }
}

resource "terraform_data" "dns" {
  for_each = toset([var.name])
  input    = "${each.key}.svc.internal" # 2.0.0 moves services to svc.internal
}

resource "terraform_data" "monitor" {
  input = "https://${var.name}.svc.internal/healthz"
}

check "service_healthy" {
  assert {
    condition     = var.replicas > 0
    error_message = "${var.name} runs no replicas."
  }
}

output "version" {
  value = "2.0.0"
}
