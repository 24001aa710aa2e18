"""Job queue and local worker. Jobs live in the store (see engine.store); a worker runs each job in
its own child process so a crash ends only that job.

    store.enqueue("engine.pipeline:run_sweep_job", payload, title="...")
    run_worker()  /  start_worker_process()
"""
