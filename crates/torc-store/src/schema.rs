//! Diesel's view of the tables created by the migrations in `migrations/`.
//!
//! Written by hand with the types that both SQLite and PostgreSQL have, so that the same DSL
//! queries serve both backends.

diesel::table! {
    workflows (id) {
        id -> BigInt,
        name -> Text,
        description -> Nullable<Text>,
        user -> Nullable<Text>,
        project -> Nullable<Text>,
        metadata -> Nullable<Text>,
        jobs_sort_method -> Text,
        state -> Text,
        run_id -> Integer,
        created_at -> BigInt,
        num_jobs -> Integer,
        spec -> Nullable<Text>,
        max_concurrent_jobs -> Nullable<Integer>,
        config -> Nullable<Text>,
        deleting -> Bool,
    }
}

diesel::table! {
    resource_requirements (workflow_id, id) {
        workflow_id -> BigInt,
        id -> Integer,
        name -> Text,
        num_cpus -> Integer,
        memory_bytes -> BigInt,
        num_gpus -> Integer,
        num_nodes -> Integer,
        runtime_secs -> Double,
    }
}

diesel::table! {
    failure_handlers (workflow_id, id) {
        workflow_id -> BigInt,
        id -> Integer,
        name -> Text,
        rules -> Text,
    }
}

diesel::table! {
    files (workflow_id, id) {
        workflow_id -> BigInt,
        id -> Integer,
        name -> Text,
        path -> Text,
        identifier -> Nullable<Text>,
        st_mtime -> Nullable<Double>,
    }
}

diesel::table! {
    user_data (workflow_id, id) {
        workflow_id -> BigInt,
        id -> Integer,
        name -> Text,
        data -> Nullable<Text>,
        is_ephemeral -> Bool,
    }
}

diesel::table! {
    jobs (workflow_id, id) {
        workflow_id -> BigInt,
        id -> Integer,
        name -> Text,
        command -> Text,
        invocation_script -> Nullable<Text>,
        status -> SmallInt,
        attempt_id -> Integer,
        resource_requirement_id -> Nullable<Integer>,
        cancel_on_blocking_job_failure -> Bool,
        supports_termination -> Bool,
        failure_handler_id -> Nullable<Integer>,
        priority -> BigInt,
        tags -> Text,
        env -> Text,
        timeout_secs -> Nullable<Double>,
        scheduler -> Nullable<Text>,
    }
}

diesel::table! {
    job_dependencies (workflow_id, job_id, depends_on_job_id) {
        workflow_id -> BigInt,
        job_id -> Integer,
        depends_on_job_id -> Integer,
    }
}

diesel::table! {
    job_files (workflow_id, job_id, is_output, position) {
        workflow_id -> BigInt,
        job_id -> Integer,
        is_output -> Bool,
        position -> Integer,
        file_id -> Integer,
    }
}

diesel::table! {
    job_user_data (workflow_id, job_id, is_output, position) {
        workflow_id -> BigInt,
        job_id -> Integer,
        is_output -> Bool,
        position -> Integer,
        user_data_id -> Integer,
    }
}

diesel::table! {
    results (id) {
        id -> BigInt,
        workflow_id -> BigInt,
        job_id -> Integer,
        run_id -> Integer,
        attempt_id -> Integer,
        runner -> Nullable<Text>,
        return_code -> Integer,
        status -> SmallInt,
        start_time -> BigInt,
        end_time -> BigInt,
        exec_time_secs -> Double,
        peak_memory_bytes -> Nullable<BigInt>,
        avg_memory_bytes -> Nullable<BigInt>,
        peak_cpu_percent -> Nullable<Double>,
        avg_cpu_percent -> Nullable<Double>,
        end_reason -> Nullable<Text>,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        workflow_id -> BigInt,
        time -> BigInt,
        kind -> Text,
        job_id -> Nullable<Integer>,
        message -> Text,
    }
}

diesel::table! {
    tokens (id) {
        id -> BigInt,
        name -> Text,
        user -> Text,
        sha256 -> Text,
        scope_kind -> Nullable<Text>,
        scope_value -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    idempotency_keys (user, key) {
        user -> Text,
        key -> Text,
        request_sha256 -> Text,
        workflow_id -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    action_records (workflow_id, id) {
        workflow_id -> BigInt,
        id -> Integer,
        action_index -> Integer,
        run_id -> Integer,
        triggered_at -> BigInt,
    }
}

diesel::table! {
    action_claims (workflow_id, record_id, executor) {
        workflow_id -> BigInt,
        record_id -> Integer,
        executor -> Text,
        claimed_at -> BigInt,
    }
}

diesel::table! {
    allocations (workflow_id, id) {
        workflow_id -> BigInt,
        id -> Integer,
        record_id -> Integer,
        scheduler -> Text,
        batch_id -> Nullable<BigInt>,
        state -> Text,
        executor -> Text,
        requested_at -> BigInt,
        started_at -> Nullable<BigInt>,
        ended_at -> Nullable<BigInt>,
        note -> Text,
    }
}

diesel::table! {
    resource_samples (id) {
        id -> BigInt,
        workflow_id -> BigInt,
        job_id -> Nullable<Integer>,
        run_id -> Nullable<Integer>,
        attempt_id -> Nullable<Integer>,
        runner -> Text,
        time -> BigInt,
        cpu_percent -> Double,
        memory_bytes -> BigInt,
        num_processes -> Integer,
    }
}

diesel::joinable!(jobs -> workflows (workflow_id));
diesel::joinable!(results -> workflows (workflow_id));
diesel::joinable!(events -> workflows (workflow_id));

diesel::allow_tables_to_appear_in_same_query!(
    workflows,
    resource_requirements,
    failure_handlers,
    files,
    user_data,
    jobs,
    job_dependencies,
    job_files,
    job_user_data,
    results,
    events,
    tokens,
    idempotency_keys,
    action_records,
    action_claims,
    allocations,
    resource_samples,
);
