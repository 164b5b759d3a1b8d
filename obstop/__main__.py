from obstop.cli import app

app()
