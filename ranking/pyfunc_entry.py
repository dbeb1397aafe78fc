"""MLflow models-from-code entry point of a logged ranker (`ranking.pyfunc.ENTRY_POINT`): MLflow runs this file
when it loads the model, instead of unpickling an object."""

from mlflow.models import set_model

from ranking.pyfunc import RankerModel

set_model(RankerModel())
