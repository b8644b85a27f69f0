"""What each ``vlmscale`` command does, on an ``argparse.Namespace``-like object of its options.

The command line itself (options, help, completion, exit codes) is ``orchestrator.cli``; keeping
the two apart lets tests and scripts call a command without a shell. Heavy libraries are imported
inside the commands that need them.

    experiment  validate, schema, run, resume, results, status, rescore, repair, ui, convert-benchmark
    kube        render, submit, logs, delete
    law         fit, frontier, propose, report, profile
"""

from .experiment import (
                         cmd_convert_benchmark,
                         cmd_repair,
                         cmd_rescore,
                         cmd_results,
                         cmd_resume,
                         cmd_run,
                         cmd_schema,
                         cmd_status,
                         cmd_ui,
                         cmd_validate,
)
from .kube import cmd_delete, cmd_logs, cmd_render, cmd_submit
from .law import cmd_fit, cmd_frontier, cmd_profile, cmd_propose, cmd_report

__all__ = ["cmd_convert_benchmark", "cmd_delete", "cmd_fit", "cmd_frontier", "cmd_logs", "cmd_profile", "cmd_propose", "cmd_render",
           "cmd_repair", "cmd_report", "cmd_rescore", "cmd_results", "cmd_resume", "cmd_run", "cmd_schema", "cmd_status", "cmd_submit", "cmd_ui",
           "cmd_validate"]
