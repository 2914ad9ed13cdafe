"""`make demo`: the processes start where the banner says, and every app's demo data step runs."""

import subprocess

from cdp.demo import demo_data_steps, honcho_command


def test_the_web_process_gets_the_port_the_banner_prints():
    # given the port the banner prints / when honcho is asked which port the web process gets
    command = honcho_command("8123")
    out = subprocess.run([*command[:-3], "check"], capture_output=True, text=True)  # the Procfile parses
    assert out.returncode == 0, out.stderr
    # then honcho's base port (which becomes the web's PORT) is that port, not its default 5000
    assert command[-2:] == ["-p", "8123"]


def test_demo_steps_run_the_shop_then_each_app_in_layer_order():
    steps = [step[0] for step in demo_data_steps()]
    assert steps == ["generate_demo_store", "demo_consent", "demo_segments", "demo_recommendations"]


def test_the_demo_storefront_runs_on_its_own_port_and_sends_to_the_printed_cdp():
    from cdp.demo import storefront_command

    command = storefront_command("8123", "8124")
    assert command[1:3] == ["-m", "cdp.demo.storefront"]
    assert command[command.index("--port") + 1] == "8124"
    assert command[command.index("--cdp") + 1] == "http://127.0.0.1:8123"
