"""Peak memory of every method against the size of its output grid: the figures behind each
method's ``Method.memory`` (bytes per output voxel, fixed MiB), which the resource guard of
``methods.run`` uses to refuse a run that cannot fit before it starts.

    python Testing/benchmarks/method_memory.py [--output method_memory.json]

Runs each method (its fast test options) on the demo phantom at 2, 1 and 0.5 mm output slices,
measures the peak with the benchmark's PeakMemory (traced allocations and resident memory) and
fits a line through the three points.
"""

import argparse
import json

import numpy as np
from CardiacReconstructionLib import methods
from CardiacReconstructionLib.evaluation.bench import PeakMemory
from CardiacReconstructionLib.simulation.cases import make_case
from CardiacReconstructionLib.simulation.mr_render import render_cine
from CardiacReconstructionLib.simulation.phantom import make_phantom


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default="method_memory.json")
    args = p.parse_args(argv)
    case = make_case(make_phantom(0).truth, "normal", seed=0)
    case.image = render_cine(case.sax)  # for the image-domain methods (deeprecon)
    out = {}
    for m in methods.available():
        rows = []
        for sp in (2.0, 1.0, 0.5):
            g = methods.output_geometry(case.sax.geometry, sp)
            methods.run(m.name, case, slice_spacing=sp, device="cpu", **m.test_options)  # warm caches
            with PeakMemory() as mem:
                methods.run(m.name, case, slice_spacing=sp, device="cpu", **m.test_options)
            rows.append((int(np.prod(g.shape)), mem.peak_mib))
        voxels, mib = (np.array(column, float) for column in zip(*rows))
        slope, icpt = np.polyfit(voxels, mib * 2**20, 1)
        out[m.name] = {"rows": rows, "bytes_per_voxel": slope, "fixed_mib": icpt / 2**20}
        print(f"{m.name}: {slope:.1f} bytes per output voxel + {icpt / 2**20:.1f} MiB ({rows})", flush=True)
    json.dump(out, open(args.output, "w"), indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
