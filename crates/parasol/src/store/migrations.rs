//! Schema migrations, applied in order at start.
//!
//! Each step is plain DDL both backends accept, except statements marked
//! [`POSTGRES_ONLY`]. The applied version is kept
//! in `schema_version`; a database newer than this binary is refused, since
//! an old binary writing a new schema could corrupt it.

use anyhow::{bail, Context};

use super::{Backend, Store};

/// The migrations, oldest first. Never edit a released step: append one.
const STEPS: &[&[&str]] = &[&[
    "CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        is_admin BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE ssh_keys (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        public_key TEXT NOT NULL,
        is_default BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE INDEX ssh_keys_account ON ssh_keys (account_id, created_at)",
    "CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        cluster_id TEXT,
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        shade_instance_type TEXT NOT NULL,
        ssh_key_id TEXT,
        status TEXT NOT NULL,
        generation BIGINT NOT NULL,
        wake_at BIGINT,
        doc TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX instances_account ON instances (account_id, status, created_at)",
    "CREATE INDEX instances_status ON instances (status)",
    "CREATE INDEX instances_wake ON instances (wake_at)",
    "CREATE INDEX instances_offer ON instances (cloud, region, shade_instance_type, status)",
    "CREATE TABLE sim_machines (
        instance_id TEXT PRIMARY KEY,
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        shade_instance_type TEXT NOT NULL,
        state TEXT NOT NULL,
        launched_at BIGINT NOT NULL,
        ready_at BIGINT NOT NULL,
        ip TEXT,
        detail TEXT,
        restarts BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX sim_machines_offer ON sim_machines (cloud, region, shade_instance_type, state)",
], &[
    // Clusters: the API object as a document; nodes are instances rows
    // pointing here through instances.cluster_id.
    "CREATE TABLE clusters (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        status TEXT NOT NULL,
        generation BIGINT NOT NULL,
        wake_at BIGINT,
        doc TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX clusters_account ON clusters (account_id, status, created_at)",
    "CREATE INDEX clusters_wake ON clusters (wake_at)",
    "CREATE INDEX instances_cluster ON instances (cluster_id)",
    // Cluster nodes draw on a separate pool of sim capacity.
    "ALTER TABLE sim_machines ADD COLUMN pool TEXT NOT NULL DEFAULT 'single'",
], &[
    // Reconciler leases (store/leases.rs): which replica is stepping a row,
    // and until when its claim holds if it dies.
    "ALTER TABLE instances ADD COLUMN lease_owner TEXT",
    "ALTER TABLE instances ADD COLUMN lease_until BIGINT",
    "ALTER TABLE clusters ADD COLUMN lease_owner TEXT",
    "ALTER TABLE clusters ADD COLUMN lease_until BIGINT",
], &[
    // The hosts provider: which operator host each instance holds. Both
    // keys are unique, so a retried launch finds its host again and two
    // instances can never hold one host.
    "CREATE TABLE host_allocations (
        instance_id TEXT PRIMARY KEY,
        host TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        boot_id TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
], &[
    // Templates (store/templates.rs): the API object as a document. A
    // public template is readable by every account, writable by its own.
    "CREATE TABLE templates (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        public BIGINT NOT NULL,
        doc TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX templates_account ON templates (account_id, created_at)",
], &[
    // Volumes (store/volumes.rs). Which instance mounts a volume is not
    // stored on the volume: it is derived from volume_mounts joined with
    // the instances that still hold a machine, so it cannot go stale.
    "CREATE TABLE volumes (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        size_in_gb BIGINT NOT NULL,
        fixed_size BIGINT NOT NULL,
        multi_mount BIGINT NOT NULL,
        price_micros BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        deleted_at BIGINT
    )",
    "CREATE INDEX volumes_account ON volumes (account_id, created_at)",
    "CREATE TABLE volume_mounts (
        volume_id TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        PRIMARY KEY (volume_id, instance_id)
    )",
    "CREATE INDEX volume_mounts_instance ON volume_mounts (instance_id)",
    // Alerts and other notable events, per account.
    "CREATE TABLE events (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        instance_id TEXT,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE INDEX events_account ON events (account_id, created_at)",
    // Spot machines can be reclaimed by the sim's preemption.
    "ALTER TABLE sim_machines ADD COLUMN spot BIGINT NOT NULL DEFAULT 0",
], &[
    // Capacity counts run on every create and every sim launch; covering
    // indexes answer them from the index alone instead of reading every
    // holding instance's row (the JSON document) to test cluster_id or pool.
    "CREATE INDEX instances_holding ON instances (cloud, region, shade_instance_type, status, cluster_id)",
    "CREATE INDEX sim_machines_pool ON sim_machines (cloud, region, shade_instance_type, pool, state)",
], &[
    // Capacity counters (store/capacity.rs) replace those counts: one row
    // per offer and pool, kept in step with the rows they count. Filled
    // here from the rows already stored; the status and state lists are
    // instances::HOLDING and capacity::OCCUPYING.
    "CREATE TABLE holdings (
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        shade_instance_type TEXT NOT NULL,
        pool TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (cloud, region, shade_instance_type, pool)
    )",
    "INSERT INTO holdings (cloud, region, shade_instance_type, pool, n)
     SELECT cloud, region, shade_instance_type,
            CASE WHEN cluster_id IS NULL THEN 'single' ELSE 'cluster' END, COUNT(*)
     FROM instances
     WHERE status IN ('creating','pending_provider','pending','active','deleting')
     GROUP BY cloud, region, shade_instance_type,
              CASE WHEN cluster_id IS NULL THEN 'single' ELSE 'cluster' END",
    "CREATE TABLE sim_holdings (
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        shade_instance_type TEXT NOT NULL,
        pool TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (cloud, region, shade_instance_type, pool)
    )",
    "INSERT INTO sim_holdings (cloud, region, shade_instance_type, pool, n)
     SELECT cloud, region, shade_instance_type, pool, COUNT(*)
     FROM sim_machines
     WHERE state IN ('running','doomed','failed','preempted','terminating')
     GROUP BY cloud, region, shade_instance_type, pool",
    "DROP INDEX instances_holding",
    "DROP INDEX sim_machines_pool",
    // GET /instances reads each instance's id and generation to find its
    // cached rendering (http/render_cache.rs); from the index alone, not
    // from rows that are mostly their JSON document.
    "CREATE INDEX instances_versions ON instances (account_id, created_at, id, generation, status)",
], &[
    // Values a deployment makes once and every replica shares (its
    // deployment id, signing keys): store/settings.rs.
    "CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )",
], &[
    // An account whose key may use only the read-only MCP tools (issue 17).
    "ALTER TABLE accounts ADD COLUMN mcp_read_only BIGINT NOT NULL DEFAULT 0",
], &[
    // The audit log of state-changing requests: store/audit.rs.
    "CREATE TABLE audit_log (
        id TEXT PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        account_id TEXT,
        key_id TEXT,
        client_addr TEXT,
        method TEXT NOT NULL,
        route TEXT NOT NULL,
        path TEXT NOT NULL,
        object_id TEXT,
        status BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        request_id TEXT NOT NULL
    )",
    "CREATE INDEX audit_log_at ON audit_log (at_ms)",
], &[
    // Leases are renewed every few seconds and cleared at each SQLite
    // start by lease_owner, which no index covered: each was a scan of
    // every row (3.6 s with a million instances). Only leased rows are in
    // these, so they stay as small as the work in flight.
    "CREATE INDEX instances_leased ON instances (lease_owner) WHERE lease_owner IS NOT NULL",
    "CREATE INDEX clusters_leased ON clusters (lease_owner) WHERE lease_owner IS NOT NULL",
], &[
    // Several API keys per account (store/api_keys.rs); authentication
    // reads keys from here. The UNIQUE key_hash index is the lookup by
    // key. Every account's existing key becomes its first one, named
    // `default`, with the account's id as the key's id (both uuids, so the
    // copy needs no uuid function, which SQLite lacks). accounts.key_hash
    // stays as it was (NOT NULL UNIQUE) and keeps the first key's hash.
    "CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT,
        revoked_at BIGINT
    )",
    "CREATE INDEX api_keys_account ON api_keys (account_id, created_at)",
    "INSERT INTO api_keys (id, account_id, name, key_hash, created_at)
     SELECT id, id, 'default', key_hash, created_at FROM accounts",
], &[
    // Budgets (issue 16): the budget as the API shows it, and per-account
    // counters of live GPUs and $/h holding the limits admission checks
    // (store/budgets.rs). The counters start empty; the start-time recount
    // fills them from the instance rows.
    "ALTER TABLE accounts ADD COLUMN budget TEXT",
    "CREATE TABLE account_spend (
        account_id TEXT PRIMARY KEY,
        gpus BIGINT NOT NULL DEFAULT 0,
        hourly_cents BIGINT NOT NULL DEFAULT 0,
        max_gpus BIGINT,
        max_hourly_cents BIGINT,
        monthly_limit_cents BIGINT,
        alert_month TEXT,
        budget_set_at BIGINT
    )",
    // The new counters are filled by the next start's recount, which runs
    // only while this marker is missing (store/capacity.rs), so the step
    // owes one even on a store that was recounted before.
    "DELETE FROM settings WHERE name = 'capacity_recount'",
], &[
    // Volumes that exist at their cloud (issue 25): the reconciler makes
    // each at its cloud and deletes it there (store/volumes.rs), so a
    // volume row gets a lifecycle like an instance's: a status, the
    // cloud's id and zone, a generation, a due time and a lease. Volumes
    // stored before were never made at any cloud: each live one is due
    // now, to be made for real; a deleted one had nothing to delete.
    "ALTER TABLE volumes ADD COLUMN status TEXT NOT NULL DEFAULT 'creating'",
    "ALTER TABLE volumes ADD COLUMN status_details TEXT",
    "ALTER TABLE volumes ADD COLUMN cloud_assigned_id TEXT",
    "ALTER TABLE volumes ADD COLUMN zone TEXT",
    "ALTER TABLE volumes ADD COLUMN generation BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE volumes ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE volumes ADD COLUMN wake_at BIGINT",
    "ALTER TABLE volumes ADD COLUMN lease_owner TEXT",
    "ALTER TABLE volumes ADD COLUMN lease_until BIGINT",
    "UPDATE volumes SET wake_at = created_at WHERE deleted_at IS NULL",
    "UPDATE volumes SET status = 'deleted' WHERE deleted_at IS NOT NULL",
    "CREATE INDEX volumes_wake ON volumes (wake_at)",
    "CREATE INDEX volumes_leased ON volumes (lease_owner) WHERE lease_owner IS NOT NULL",
    // The sim's simulated volumes, as sim_machines holds its machines.
    "CREATE TABLE sim_volumes (
        volume_id TEXT PRIMARY KEY,
        cloud TEXT NOT NULL,
        region TEXT NOT NULL,
        size_in_gb BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        deleted_at BIGINT
    )",
], &[
    // Webhooks (issue 27): subscriptions, the delivery queue (claimed
    // with leases like instances: store/webhooks.rs) and each attempt.
    // Events keep the object they are about, which subscribers receive.
    "ALTER TABLE events ADD COLUMN data TEXT",
    "CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        account_id TEXT,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        description TEXT,
        enabled BIGINT NOT NULL,
        all_accounts BIGINT NOT NULL,
        format TEXT NOT NULL,
        secret TEXT NOT NULL,
        old_secret TEXT,
        old_secret_until BIGINT,
        failing_since BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    "CREATE INDEX webhooks_account ON webhooks (account_id, created_at)",
    "CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        wake_at BIGINT,
        lease_owner TEXT,
        lease_until BIGINT,
        created_at BIGINT NOT NULL
    )",
    "CREATE INDEX webhook_deliveries_wake ON webhook_deliveries (wake_at)",
    "CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id)",
    "CREATE TABLE webhook_attempts (
        id TEXT PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        status_code BIGINT,
        error TEXT,
        duration_ms BIGINT NOT NULL,
        at BIGINT NOT NULL
    )",
    "CREATE INDEX webhook_attempts_hook ON webhook_attempts (webhook_id, at)",
], &[
    // The live event stream (issue 27) resumes from an event's place in
    // the log, which neither the random id nor created_at (the lifecycle
    // clock, not unique) gives: seq numbers events in commit order
    // (store/event_log.rs says why commit order). Events already stored
    // are numbered in the order GET /v1/events lists them.
    "ALTER TABLE events ADD COLUMN seq BIGINT",
    "UPDATE events SET seq = numbered.n
     FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) AS n FROM events) AS numbered
     WHERE events.id = numbered.id",
    "CREATE UNIQUE INDEX events_seq ON events (seq)",
    "CREATE INDEX events_account_seq ON events (account_id, seq)",
], &[
    // Roles (issue 30): what a key may do in its account. Keys made before
    // roles could do everything, so they stay owners.
    "ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'owner'",
    // People who sign in through an identity provider, known by issuer
    // and subject (an email can change hands; the pair cannot).
    "CREATE TABLE people (
        id TEXT PRIMARY KEY,
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        email TEXT,
        name TEXT,
        created_at BIGINT NOT NULL,
        last_sign_in_at BIGINT
    )",
    "CREATE UNIQUE INDEX people_identity ON people (issuer, subject)",
    // A person's role in an account; source says whether a config rule
    // (re-evaluated at each sign-in) or an owner's invitation made it.
    "CREATE TABLE memberships (
        person_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        role TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (person_id, account_id)
    )",
    "CREATE INDEX memberships_account ON memberships (account_id)",
    // Owners' invitations, by email, taken up at the invitee's sign-in.
    "CREATE TABLE invites (
        account_id TEXT NOT NULL,
        email TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (account_id, email)
    )",
    // Console sessions, looked up on each request so that ending one (sign
    // out, a membership removed) holds on every replica from the next
    // request. id_hash is the SHA-256 of the id the signed cookie carries.
    "CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        person_id TEXT,
        key_hash TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    )",
    "CREATE INDEX console_sessions_person ON console_sessions (person_id)",
    // A person's own key ends with their membership; its role is capped
    // by the membership's.
    "ALTER TABLE api_keys ADD COLUMN person_id TEXT",
    "ALTER TABLE audit_log ADD COLUMN person_id TEXT",
    // Sign-ins under way at an identity provider, by the SHA-256 of their
    // state; taken (deleted) by the callback, so each is used once, on
    // whichever replica the browser comes back to.
    "CREATE TABLE oidc_logins (
        state_hash TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        nonce TEXT NOT NULL,
        verifier TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        expires_at BIGINT NOT NULL
    )",
], &[
    // What instances' agents report (issue 26): store/agent.rs. Per
    // instance its last report; every report for a short while; one row
    // per minute for days. Utilisation is in hundredths of a percent and
    // GPUs a compact JSON array, so every column is BIGINT or TEXT.
    "CREATE TABLE agent_state (
        instance_id TEXT PRIMARY KEY,
        first_seen_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL,
        version TEXT NOT NULL,
        last_seq BIGINT NOT NULL,
        ssh_sessions BIGINT NOT NULL,
        gpus TEXT NOT NULL
    )",
    "CREATE INDEX agent_state_seen ON agent_state (last_seen_at)",
    "CREATE TABLE agent_samples (
        instance_id TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        ssh_sessions BIGINT NOT NULL,
        gpu_count BIGINT NOT NULL,
        max_util BIGINT NOT NULL,
        max_ecc BIGINT NOT NULL,
        xids TEXT,
        gpus TEXT NOT NULL,
        PRIMARY KEY (instance_id, at_ms)
    )",
    // The downsampling reads and deletes by time across instances.
    "CREATE INDEX agent_samples_at ON agent_samples (at_ms)",
    "CREATE TABLE agent_history (
        instance_id TEXT NOT NULL,
        minute_ms BIGINT NOT NULL,
        samples BIGINT NOT NULL,
        first_at BIGINT NOT NULL,
        last_at BIGINT NOT NULL,
        max_ssh BIGINT NOT NULL,
        min_gpu_count BIGINT NOT NULL,
        max_gpu_count BIGINT NOT NULL,
        max_util BIGINT NOT NULL,
        max_ecc BIGINT NOT NULL,
        xids TEXT,
        gpus TEXT NOT NULL,
        PRIMARY KEY (instance_id, minute_ms)
    )",
    "CREATE INDEX agent_history_minute ON agent_history (minute_ms)",
], &[
    // How tests and demos steer the sim's simulated agents
    // (providers/sim/agent.rs), kept so that it outlives a restart.
    "CREATE TABLE sim_agents (
        instance_id TEXT PRIMARY KEY,
        steering TEXT NOT NULL
    )",
], &[
    // Idle and health policies: the idle policy an admin sets on an
    // account (JSON), and each instance's health as last evaluated, for
    // the fleet gauges.
    "ALTER TABLE accounts ADD COLUMN idle_policy TEXT",
    "ALTER TABLE instances ADD COLUMN health TEXT",
], &[
    // The replicas that keep API keys in memory (PostgreSQL; see
    // auth_sync.rs): each renews `alive_until` (the database's clock, ms)
    // while it listens for changes, and a revoke waits for each live one
    // to confirm. `fenced` = 1: a revoke gave up waiting for its
    // confirmation; the replica must drop its cache before it may renew.
    "CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        alive_until BIGINT NOT NULL,
        fenced BIGINT NOT NULL DEFAULT 0
    )",
    // Every change to what a request's key or console session resolves
    // to (the key itself, its account, a membership capping a personal
    // key, the session, its person) tells the replicas at commit,
    // whichever statement or process made it. Names the object kind
    // (TG_ARGV[0]) and the id in the column TG_ARGV[1].
    "@postgres CREATE FUNCTION parasol_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
        changed jsonb;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            changed := to_jsonb(NEW);
        ELSE
            changed := to_jsonb(OLD);
        END IF;
        PERFORM pg_notify('parasol_auth', TG_ARGV[0] || ' ' || (changed ->> TG_ARGV[1]));
        RETURN NULL;
    END
    $fn$",
    // `last_used_at` changes every minute of use and `key_hash = key_hash`
    // locks an account: neither changes a credential.
    "@postgres CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys FOR EACH ROW
        WHEN ((OLD.revoked_at, OLD.role, OLD.key_hash, OLD.account_id, OLD.person_id)
            IS DISTINCT FROM (NEW.revoked_at, NEW.role, NEW.key_hash, NEW.account_id, NEW.person_id))
        EXECUTE FUNCTION parasol_auth_changed('key', 'id')",
    "@postgres CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys FOR EACH ROW
        EXECUTE FUNCTION parasol_auth_changed('key', 'id')",
    "@postgres CREATE TRIGGER accounts_changed AFTER UPDATE ON accounts FOR EACH ROW
        WHEN ((OLD.name, OLD.key_hash, OLD.is_admin, OLD.mcp_read_only)
            IS DISTINCT FROM (NEW.name, NEW.key_hash, NEW.is_admin, NEW.mcp_read_only))
        EXECUTE FUNCTION parasol_auth_changed('account', 'id')",
    "@postgres CREATE TRIGGER accounts_deleted AFTER DELETE ON accounts FOR EACH ROW
        EXECUTE FUNCTION parasol_auth_changed('account', 'id')",
    // A new membership changes the accounts a person's session may
    // switch to.
    "@postgres CREATE TRIGGER memberships_changed AFTER INSERT OR UPDATE OR DELETE ON memberships
        FOR EACH ROW EXECUTE FUNCTION parasol_auth_changed('person', 'person_id')",
    "@postgres CREATE TRIGGER people_changed AFTER UPDATE ON people
        FOR EACH ROW EXECUTE FUNCTION parasol_auth_changed('person', 'id')",
    "@postgres CREATE TRIGGER console_sessions_changed AFTER UPDATE OR DELETE ON console_sessions
        FOR EACH ROW EXECUTE FUNCTION parasol_auth_changed('session', 'id_hash')",
]];

/// Marks a statement of a step that only PostgreSQL runs (triggers and
/// functions, which SQLite needs not: its one process sees every write).
const POSTGRES_ONLY: &str = "@postgres ";

/// The schema version this binary writes.
pub const CURRENT: i64 = STEPS.len() as i64;

/// Key of the PostgreSQL advisory lock that serialises migrations ("psl").
const MIGRATION_LOCK: i64 = 0x70_73_6c;

/// The schema version whose step creates `table`, for tests that open a
/// store as it was just before it.
pub fn version_creating(table: &str) -> Option<i64> {
    version_running(&format!("CREATE TABLE {table} "))
}

/// The schema version whose step runs a statement starting with `head`
/// (tests of a step open a store at the version before it, whatever
/// steps come after).
pub(super) fn version_running(head: &str) -> Option<i64> {
    STEPS
        .iter()
        .position(|step| step.iter().any(|stmt| stmt.starts_with(head)))
        .map(|i| i as i64 + 1)
}

/// Applies the steps up to version `target` (tests open a store at an
/// older version to check what a later step does to existing rows).
pub(super) async fn apply_up_to(store: &Store, target: i64) -> anyhow::Result<()> {
    // One transaction for the check and every step. Replicas starting
    // together on a fresh database queue on it: the first migrates, the
    // others then find nothing left to do. PostgreSQL: an advisory lock
    // held until commit (DDL is transactional there). SQLite: BEGIN
    // IMMEDIATE takes the write lock up front.
    let mut conn = store
        .pool()
        .acquire()
        .await
        .context("connecting to migrate")?;
    let begin = match store.backend() {
        Backend::Postgres => "BEGIN",
        Backend::Sqlite => "BEGIN IMMEDIATE",
    };
    sqlx::query(begin)
        .execute(&mut *conn)
        .await
        .context("starting the migration transaction")?;
    match migrate(&mut conn, store.backend(), target).await {
        Ok(()) => {
            sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .context("committing migrations")?;
            Ok(())
        }
        Err(e) => {
            sqlx::query("ROLLBACK").execute(&mut *conn).await.ok();
            Err(e)
        }
    }
}

async fn migrate(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    upto: i64,
) -> anyhow::Result<()> {
    if backend == Backend::Postgres {
        // The function returns void, which the Any driver cannot decode;
        // selecting a constant beside it keeps the result decodable.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS migration_lock")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await
            .context("taking the migration lock")?;
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .execute(&mut *conn)
        .await
        .context("creating schema_version")?;
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *conn)
        .await
        .context("reading schema_version")?;
    let version = version.unwrap_or(0);
    if version > CURRENT {
        bail!(
            "the database schema is version {version} but this parasol binary only knows \
             versions up to {CURRENT}; run a newer parasol (refusing to start rather than risk \
             corrupting it)"
        );
    }
    for (i, step) in STEPS
        .iter()
        .enumerate()
        .take(upto as usize)
        .skip(version as usize)
    {
        let target = i as i64 + 1;
        for stmt in step.iter() {
            let stmt = match stmt.strip_prefix(POSTGRES_ONLY) {
                Some(_) if backend != Backend::Postgres => continue,
                Some(pg) => pg,
                None => stmt,
            };
            sqlx::query(stmt)
                .execute(&mut *conn)
                .await
                .with_context(|| format!("migration {target}"))?;
        }
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(target)
            .execute(&mut *conn)
            .await?;
        tracing::info!(version = target, "applied migration");
    }
    Ok(())
}
