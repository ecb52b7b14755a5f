"""The ec2 backend: ECS tasks on EC2 Spot and on-demand instances."""
