"""Pulumi components for the RDS stack that receives a migrated Supabase database."""
