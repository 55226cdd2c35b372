#!/usr/bin/env python3
"""Read a TensorBoard log directory with TensorBoard's own reader and print what it finds.

For every run directory under LOGDIR (a directory holding `*tfevents*` files), prints each scalar tag with
its number of points and their steps, the hyperparameters of the hparams plugin's session start info, and
the session end status. labpipe's event files are hand-encoded (src/tensorboard/); this is the independent
check that TensorBoard reads them as intended. tests/fixtures/tensorboard/check_output.txt is this script's
output, and a Rust test compares it with freshly written files.

With --server, it also starts the real `tensorboard` server on the directory and prints the experiment the
HPARAMS tab is built from (the hparams plugin's HTTP API), to show the runs are listed and compared there.

Needs the `tensorboard` Python package (in a virtualenv outside the repository, e.g. /work/.venv-ref):
    python3 scripts/check_tensorboard.py LOGDIR [--server]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2


def run_dirs(logdir):
    """Directories holding event files, relative to logdir, sorted."""
    found = []
    for root, _dirs, files in os.walk(logdir):
        if any("tfevents" in f for f in files):
            found.append(os.path.relpath(root, logdir))
    return sorted(found)


def value_text(v):
    """A google.protobuf.Value as JSON (numbers as Python floats: 40.0, 0.01)."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        return json.dumps(v.number_value)
    if kind == "string_value":
        return json.dumps(v.string_value)
    if kind == "bool_value":
        return json.dumps(v.bool_value)
    return f"<{kind}>"


def describe_run(logdir, run):
    path = os.path.join(logdir, run)
    files = sorted(f for f in os.listdir(path) if "tfevents" in f)
    # size_guidance 0: keep every point (the default samples long series).
    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    print(f"run {run}")
    print(f"  files: {len(files)}")
    print(f"  file_version: {acc.file_version}")
    for tag in sorted(acc.Tags()["scalars"]):
        steps = [e.step for e in acc.Scalars(tag)]
        print(f"  scalar {tag}: {len(steps)} points at steps {json.dumps(steps)}")
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    for tag in sorted(content):
        data = plugin_data_pb2.HParamsPluginData.FromString(content[tag])
        which = data.WhichOneof("data")
        if which == "session_start_info":
            for key in sorted(data.session_start_info.hparams):
                print(f"  hparam {key} = {value_text(data.session_start_info.hparams[key])}")
        elif which == "session_end_info":
            print(f"  session_end: {api_pb2.Status.Name(data.session_end_info.status)}")
        else:
            print(f"  hparams plugin record: {which}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def describe_server(logdir, load_fast):
    """What the running server's hparams plugin serves: the experiment (columns) and the session groups."""
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--port", str(port),
           "--host", "127.0.0.1", f"--load_fast={load_fast}", "--reload_interval", "1"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/data/plugin/hparams"
    try:
        experiment = None
        for _ in range(120):
            time.sleep(0.5)
            try:
                experiment = post_json(f"{base}/experiment", {"experimentName": ""})
            except OSError:
                continue
            if experiment.get("hparamInfos") and experiment.get("metricInfos"):
                break
        print(f"server (load_fast={load_fast}) hparams experiment:")
        if not experiment:
            print("  no answer")
            return
        hparams = sorted(h["name"] for h in experiment.get("hparamInfos", []))
        metrics = sorted(m["name"]["tag"] for m in experiment.get("metricInfos", []))
        print(f"  hparam columns: {', '.join(hparams)}")
        print(f"  metric columns: {', '.join(metrics)}")
        request = {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [{"hparam": h} for h in hparams] + [{"metric": {"tag": m}} for m in metrics],
            "startIndex": 0,
            "sliceSize": 100,
        }
        groups = post_json(f"{base}/session_groups", request)
        for g in sorted(groups.get("sessionGroups", []), key=lambda g: g["name"]):
            sessions = [(s["name"], s.get("status", "STATUS_UNKNOWN")) for s in g["sessions"]]
            lr = g["hparams"].get("optimizer.lr")
            metric_values = {m["name"]["tag"]: (m["trainingStep"], round(m["value"], 4)) for m in g["metricValues"]}
            print(f"  session group {g['name']}: sessions {sessions}, optimizer.lr {lr}, "
                  f"val/accuracy (step, value) {metric_values.get('val/accuracy')}")
        for run in run_dirs(logdir):
            query = urllib.parse.urlencode({"run": run, "tag": "val/loss"})
            url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}"
            with urllib.request.urlopen(url, timeout=30) as r:
                steps = [point[1] for point in json.load(r)]
            print(f"  scalars plugin, run {run}, val/loss steps {steps}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir")
    parser.add_argument("--server", action="store_true", help="also ask a running tensorboard server")
    args = parser.parse_args()
    runs = run_dirs(args.logdir)
    if not runs:
        sys.exit(f"{args.logdir}: no event files")
    for run in runs:
        describe_run(args.logdir, run)
    if args.server:
        for load_fast in ["false", "true"]:
            describe_server(args.logdir, load_fast)


if __name__ == "__main__":
    main()
