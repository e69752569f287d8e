//! poet-sql's integration tests: the schema against a real Postgres, and the private
//! cluster's security (SECURITY.md, findings 1 and 2).

mod cluster;
mod migrations;
