def test_train_sample_eval_round_trip(cli, trained, tmp_path):
    result = cli("sample", "-m", trained, "--label", "3", "-c", "2", "--seed", "0", "--height", "6", "--width", "6")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "samples" / "samples.png").exists()
