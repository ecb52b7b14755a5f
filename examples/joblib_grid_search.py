"""scikit-learn's n_jobs= on starburst workers: a grid search through the joblib backend.

Run: .venv/bin/python examples/joblib_grid_search.py     (needs `pip install "starburst[joblib]"`)
"""

import joblib
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.tree import DecisionTreeClassifier

import starburst.joblib  # noqa: F401  (registers the "starburst" joblib backend)


def main() -> None:
    X, y = make_classification(n_samples=600, n_features=12, random_state=0)
    grid = {"max_depth": [2, 4, 8, None], "min_samples_leaf": [1, 5, 20]}
    # One warm cluster of 2 local workers for the whole block; for AWS, add
    # backend_params=dict(backend="fargate", cpu=2, memory="4GB") after `starburst setup`.
    with joblib.parallel_config(backend="starburst", n_jobs=2):
        search = GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=5).fit(X, y)
        scores = cross_val_score(search.best_estimator_, X, y, cv=5)
    print(f"grid search: {len(search.cv_results_['params'])} candidates x 5 folds")
    print(f"best {search.best_params_}, score {search.best_score_:.3f}")
    print(f"cross-validated scores of the best: {scores.round(3).tolist()}")


if __name__ == "__main__":
    main()
