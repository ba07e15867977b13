"""The command line's shared options and their checks (lesionkit.cli_options)."""

from lesionkit.cli_options import variant


def test_every_task_network_takes_its_size_option() -> None:
    """``--channels`` reaches every U-Net a task trains by default (a wrapper of one
    included), ``--widen-factor`` every ResNet."""
    from lesionkit.tasks import TASKS

    for name, task in TASKS.items():
        if task.network_factory is not None or task.network not in ("unet", "residual-unet",
                                                                    "residual-unet-on-input",
                                                                    "resnet10", "resnet18"):
            continue
        resnet = task.network.startswith("resnet")
        chosen = variant(task, None, None if resnet else "8,16", 0.5 if resnet else None,
                         None, None, None)
        assert chosen.network_kwargs["widen_factor" if resnet else "channels"], name


def test_patch_size_keeps_the_thickness_of_slice_wise_patches() -> None:
    from lesionkit.tasks import get_task

    sizes = {name: variant(get_task(name), None, None, None, 32, None, None).sampler.patch_size
             for name in ("mrf-lesion", "flair-only-lesion-dr", "mrf-lesion-3d")}
    assert sizes == {"mrf-lesion": (32, 32, 1), "flair-only-lesion-dr": (32, 32, 5),
                     "mrf-lesion-3d": (32, 32, 32)}


def test_min_lesion_depth_default_is_the_libraries() -> None:
    from lesionkit.changes import ChangeReading
    from lesionkit.cli_options import MIN_LESION_DEPTH_MM
    from lesionkit.lesions import LESION_MIN_DEPTH_MM
    from lesionkit.writers import DEFAULT_LESION_READING

    assert MIN_LESION_DEPTH_MM == LESION_MIN_DEPTH_MM == DEFAULT_LESION_READING.min_depth_mm
    assert ChangeReading().min_depth_mm == LESION_MIN_DEPTH_MM
