from services.wallet.settings import WalletSettings


def test_the_wallet_reads_its_former_names_for_one_release(monkeypatch):
    monkeypatch.setenv("WALLET_POINTS_EXPIRY_MONTHS", "3")
    monkeypatch.setenv("WALLET_FINANCE_REPORT_EMAILS", "finance@example.com")

    settings = WalletSettings()

    assert settings.points_expiry_months == 3
    assert settings.finance_recipients == ["finance@example.com"]
